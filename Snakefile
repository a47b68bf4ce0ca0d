# Snakemake front-end of the stylepipe DAG: the same stages, commands, inputs, outputs and params as
# dvc.yaml (tests/test_dag_agreement.py checks it). Run `snakemake -c all` locally, or
# `snakemake --profile workflow/profiles/slurm` on a SLURM cluster.
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/johnson.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/demo.smk"


rule all:
    default_target: True
    input:
        rules.evaluate.output,
        rules.demo.output,
        expand("models/export/johnson/{style}", style=JOHNSON_STYLES),
