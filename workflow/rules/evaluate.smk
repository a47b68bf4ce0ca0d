rule evaluate:
    input:
        "data/prepared",
        "models/encoder",
        "models/adain",
        expand("models/johnson/{style}", style=JOHNSON_STYLES),
        "reports/train_recon/losses.csv",
        "reports/train_adain/losses.csv",
        "src/stylepipe/evaluate.py",
        "src/stylepipe/evaluate_johnson.py",
        "src/stylepipe/gatys.py",
        "src/stylepipe/report.py",
        "src/stylepipe/serving.py",
    output:
        "reports/evaluate/grid.png",
        "reports/evaluate/johnson_grid.png",
        "reports/evaluate/curves.png",
        "reports/evaluate/report.html",
        "reports/evaluate/metrics.json",
        "reports/evaluate/metrics_detail.json",
        "reports/evaluate/alpha_sweep.csv",
    params:
        **P("common", "evaluate", "train_johnson.styles"),
    log:
        "logs/evaluate.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe evaluate 2> {log}"
