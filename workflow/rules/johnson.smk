# Johnson et al.: one TransformerNet per style of train_johnson.styles (DVC: foreach stages
# train_johnson@<style> and export_johnson@<style>; here the {style} wildcard).

JOHNSON_STYLES = config["train_johnson"]["styles"]


wildcard_constraints:
    style="[A-Za-z0-9_-]+",


rule train_johnson:
    input:
        "data/prepared",
        "models/encoder",
        "src/stylepipe/train/johnson.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/models/johnson.py",
        "src/stylepipe/losses.py",
    output:
        directory("models/johnson/{style}"),
        "reports/train_johnson/{style}/losses.csv",
    params:
        **P("common", "train_johnson"),
    resources:
        gpu=1,
    log:
        "logs/train_johnson/{style}.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe train_johnson {wildcards.style} 2> {log}"


rule export_johnson:
    input:
        "models/johnson/{style}",
        "src/stylepipe/export/johnson.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/export/opcheck.py",
    output:
        directory("models/export/johnson/{style}"),
    params:
        **P("common.seed", "export", "train_johnson.styles"),
    log:
        "logs/export_johnson/{style}.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe export_johnson {wildcards.style} 2> {log}"
