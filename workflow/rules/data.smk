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
    shell:
        "stylepipe download"


rule weights:
    input:
        "src/stylepipe/models/weights.py",
        "src/stylepipe/models/encoders.py",
    output:
        directory("models/encoder"),
    params:
        **P("weights"),
    shell:
        "stylepipe weights"


rule preprocess:
    input:
        "data/raw",
        "src/stylepipe/data/preprocess.py",
        "src/stylepipe/data/archives.py",
        "src/stylepipe/data/shards.py",
    output:
        directory("data/prepared"),
    params:
        **P("common.seed", "preprocess"),
    shell:
        "stylepipe preprocess"
