rule train_recon:
    input:
        "published",
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
        "src/stylepipe/models/published.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
        "src/stylepipe/tracking.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/viz.py",
    output:
        directory("models/recon"),
        "reports/train_recon/losses.csv",
    params:
        **P("common", "adain", "train_recon"),
    resources:
        gpu=1,
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
        "src/stylepipe/models/published.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
        "src/stylepipe/tracking.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/viz.py",
    output:
        directory("models/adain"),
        "reports/train_adain/losses.csv",
    params:
        **P("common", "adain", "train_adain"),
    resources:
        gpu=1,
    log:
        "logs/train_adain.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe train_adain 2> {log}"
