# Snakemake front-end of the stylepipe DAG: the same stages, commands, inputs, outputs and params as
# dvc.yaml (tests/test_dag_agreement.py checks it). Run `snakemake -c all` locally, or
# `snakemake --profile workflow/profiles/slurm` on a SLURM cluster. After a successful run, `onsuccess`
# records the outputs of every stage of the run's DAG in dvc.lock and the DVC cache (`stylepipe
# dvc-commit`), so `dvc status` is clean, `dvc push` uploads them and `dvc repro` re-runs nothing.
from snakemake.utils import min_version

min_version("9.0")

# `exec`: the stage's process replaces the job's shell, so SIGTERM (SLURM's time-limit warning) reaches it
# with nothing in between that dies first, and the job ends when the stage has written its checkpoint.
shell.prefix("set -euo pipefail; exec ")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/johnson.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/demo.smk"


# Internet on the login node only: the downloads (aria2, hours for the full data) and the encoder weights
# never go to compute nodes.
localrules:
    download,
    weights,


rule all:
    default_target: True
    input:
        rules.evaluate.output,
        rules.demo.output,
        rules.package.output,
        rules.export_openvino.output,
        expand("models/export/johnson/{style}", style=JOHNSON_STYLES),


onsuccess:
    stages = sorted({job.rule.name + (f"@{job.wildcards.style}" if "style" in job.wildcards.keys() else "")
                     for job in workflow.dag.jobs if job.rule.name != "all"})
    shell("stylepipe dvc-commit " + " ".join(stages))
