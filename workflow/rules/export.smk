rule export_onnx:
    input:
        "models/encoder",
        "models/adain",
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
        "src/stylepipe/export/projection.py",
        "src/stylepipe/io.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/statistics.py",
        "src/stylepipe/paths.py",
    output:
        directory("models/export/onnx"),
    params:
        **P("common.seed", "export"),
    log:
        "logs/export_onnx.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe export_onnx 2> {log}"


rule export_openvino:
    input:
        "models/encoder",
        "models/adain",
        "models/export/onnx",
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/export/projection.py",
        "src/stylepipe/io.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/statistics.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
    output:
        directory("models/export/openvino"),
    params:
        **P("common.seed", "export"),
    log:
        "logs/export_openvino.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe export_openvino 2> {log}"


rule compile_blob:
    input:
        "models/export/onnx",
        expand("models/export/johnson/{style}", style=JOHNSON_STYLES),
        "blobs",
        "src/stylepipe/__init__.py",
        "src/stylepipe/config.py",
        "src/stylepipe/errors.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/blob.py",
        "src/stylepipe/export/johnson.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/export/projection.py",
        "src/stylepipe/io.py",
        "src/stylepipe/models/__init__.py",
        "src/stylepipe/models/adain.py",
        "src/stylepipe/models/encoders.py",
        "src/stylepipe/models/functional.py",
        "src/stylepipe/models/johnson.py",
        "src/stylepipe/models/statistics.py",
        "src/stylepipe/paths.py",
        "src/stylepipe/runtime.py",
    output:
        directory("models/export/blob"),
    params:
        **P("export", "blob", "train_johnson.styles"),
    log:
        "logs/compile_blob.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe compile_blob 2> {log}"
