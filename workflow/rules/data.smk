rule download:
    input:
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/aria2.py",
        "src/stylepipe/data/download.py",
        "src/stylepipe/data/paintings.py",
        "src/stylepipe/data/sample.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/io.py",
        "src/stylepipe/paths.py",
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
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/io.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/published.py",
        "src/stylepipe/models/weights.py",
        "src/stylepipe/paths.py",
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
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/cpus.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/archives.py",
        "src/stylepipe/data/preprocess.py",
        "src/stylepipe/data/shards.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/io.py",
        "src/stylepipe/media.py",
        "src/stylepipe/paths.py",
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
