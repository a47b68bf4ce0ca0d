rule train_recon:
    input:
        "published",
        "data/prepared",
        "models/encoder",
        "src/stylepipe/__init__.py",
        "src/stylepipe/adain/__init__.py",
        "src/stylepipe/adain/model.py",
        "src/stylepipe/adain/published.py",
        "src/stylepipe/adain/train.py",
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
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/losses.py",
        "src/stylepipe/nn/palette.py",
        "src/stylepipe/nn/published.py",
        "src/stylepipe/nn/statistics.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/plumbing.py",
        "src/stylepipe/train/progress.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stopping.py",
    output:
        directory("models/recon"),
        "reports/train_recon/losses.csv",
    params:
        **P("common", "adain", "train_recon"),
    resources:
        gpu=config["common"]["nproc_per_node"],  # one GPU per torchrun process
    log:
        "logs/train_recon.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe train_recon 2> {log}"


rule train_adain:
    input:
        "data/prepared",
        "models/encoder",
        "models/recon",
        "src/stylepipe/__init__.py",
        "src/stylepipe/adain/__init__.py",
        "src/stylepipe/adain/model.py",
        "src/stylepipe/adain/published.py",
        "src/stylepipe/adain/train.py",
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
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/losses.py",
        "src/stylepipe/nn/palette.py",
        "src/stylepipe/nn/published.py",
        "src/stylepipe/nn/statistics.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/plumbing.py",
        "src/stylepipe/train/progress.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stopping.py",
    output:
        directory("models/adain"),
        "reports/train_adain/losses.csv",
    params:
        **P("common", "adain", "train_adain"),
    resources:
        gpu=config["common"]["nproc_per_node"],  # one GPU per torchrun process
    log:
        "logs/train_adain.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe train_adain 2> {log}"
