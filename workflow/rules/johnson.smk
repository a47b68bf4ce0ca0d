# Johnson et al.: one TransformerNet per style of train_johnson.styles (DVC: foreach stages
# train_johnson@<style> and export_johnson@<style>; here the {style} wildcard).

JOHNSON_STYLES = config["train_johnson"]["styles"]


wildcard_constraints:
    style="[A-Za-z0-9_-]+",


rule train_johnson:
    input:
        "data/prepared",
        "models/encoder",
        "src/stylepipe/__init__.py",
        "src/stylepipe/codedeps.py",
        "src/stylepipe/config.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/augment.py",
        "src/stylepipe/data/datasets.py",
        "src/stylepipe/data/shards.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/io.py",
        "src/stylepipe/losses.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/johnson.py",
        "src/stylepipe/models/published.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
        "src/stylepipe/tracking.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/johnson.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/viz.py",
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
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/johnson.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/export/projection.py",
        "src/stylepipe/io.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/johnson.py",
        "src/stylepipe/models/statistics.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
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
