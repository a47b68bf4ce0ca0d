rule download:
    input:
        "src/stylepipe/__init__.py",
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/colour.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/aria2.py",
        "src/stylepipe/data/download.py",
        "src/stylepipe/data/paintings.py",
        "src/stylepipe/data/sample.py",
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
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/published.py",
        "src/stylepipe/nn/weights.py",
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
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/cpus.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/media.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/archives.py",
        "src/stylepipe/data/preprocess.py",
        "src/stylepipe/data/shards.py",
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
