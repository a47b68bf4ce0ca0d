rule train_recon:
    input:
        "published",
        "src/stylepipe/models/published.py",
        "data/prepared",
        "models/encoder",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/data/datasets.py",
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
        "src/stylepipe/train/stages.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/losses.py",
        "src/stylepipe/data/datasets.py",
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
