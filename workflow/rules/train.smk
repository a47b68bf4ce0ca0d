rule train_recon:
    input:
        "data/prepared",
        "models/encoder",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/data/datasets.py",
    output:
        directory("models/recon"),
        "reports/train_recon/losses.csv",
    params:
        **P("common", "train_recon"),
    resources:
        gpu=1,
    shell:
        "stylepipe train_recon"


rule train_adain:
    input:
        "data/prepared",
        "models/encoder",
        "models/recon",
        "src/stylepipe/train/stages.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/losses.py",
        "src/stylepipe/data/datasets.py",
    output:
        directory("models/adain"),
        "reports/train_adain/losses.csv",
    params:
        **P("common", "train_adain"),
    resources:
        gpu=1,
    shell:
        "stylepipe train_adain"
