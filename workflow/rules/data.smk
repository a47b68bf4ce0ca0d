rule download:
    input:
        "src/stylepipe/data/download.py",
        "src/stylepipe/data/aria2.py",
        "src/stylepipe/data/sample.py",
        "src/stylepipe/data/paintings.py",
    output:
        directory("data/raw"),
    params:
        **P("download"),
    log:
        "logs/download.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe download 2> {log}"


rule weights:
    input:
        "published",
        "src/stylepipe/models/published.py",
        "src/stylepipe/models/weights.py",
        "src/stylepipe/models/encoders.py",
    output:
        directory("models/encoder"),
    params:
        **P("weights"),
    log:
        "logs/weights.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe weights 2> {log}"


rule preprocess:
    input:
        "data/raw",
        "src/stylepipe/data/preprocess.py",
        "src/stylepipe/data/archives.py",
        "src/stylepipe/data/shards.py",
        "src/stylepipe/media.py",
    output:
        directory("data/prepared"),
    params:
        **P("common.seed", "preprocess"),
    log:
        "logs/preprocess.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe preprocess 2> {log}"
