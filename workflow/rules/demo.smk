rule demo:
    input:
        "models/encoder",
        "models/adain",
        "models/export/onnx",
        "models/export/openvino",
        "models/export/blob",
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/demo/__init__.py",
        "src/stylepipe/demo/clip.py",
        "src/stylepipe/demo/host.py",
        "src/stylepipe/demo/oak.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/export/projection.py",
        "src/stylepipe/io.py",
        "src/stylepipe/media.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/statistics.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
    output:
        directory("demo"),
    params:
        **P("export", "demo"),
    log:
        "logs/demo.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe demo 2> {log}"
