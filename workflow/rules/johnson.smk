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
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/code.py",
        "src/stylepipe/core/colour.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/core/runtime.py",
        "src/stylepipe/core/tracking.py",
        "src/stylepipe/core/viz.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/augment.py",
        "src/stylepipe/data/datasets.py",
        "src/stylepipe/data/shards.py",
        "src/stylepipe/johnson/__init__.py",
        "src/stylepipe/johnson/model.py",
        "src/stylepipe/johnson/train.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/losses.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/plumbing.py",
        "src/stylepipe/train/progress.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stopping.py",
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
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/core/runtime.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/myriad/__init__.py",
        "src/stylepipe/export/myriad/opcheck.py",
        "src/stylepipe/export/myriad/projection.py",
        "src/stylepipe/export/myriad/target.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/johnson/__init__.py",
        "src/stylepipe/johnson/export.py",
        "src/stylepipe/johnson/model.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
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
