rule export_onnx:
    input:
        "models/encoder",
        "models/adain",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
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
        "src/stylepipe/export/openvino.py",
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
        "src/stylepipe/export/blob.py",
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
