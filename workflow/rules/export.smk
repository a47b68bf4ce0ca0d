rule export_onnx:
    input:
        "models/encoder",
        "models/adain",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/opcheck.py",
    output:
        directory("models/export/onnx"),
    params:
        **P("export"),
    shell:
        "stylepipe export_onnx"


rule export_openvino:
    input:
        "models/export/onnx",
        "src/stylepipe/export/openvino.py",
    output:
        directory("models/export/openvino"),
    params:
        **P("export"),
    shell:
        "stylepipe export_openvino"


rule compile_blob:
    input:
        "models/export/onnx",
        "src/stylepipe/export/blob.py",
    output:
        directory("models/export/blob"),
    params:
        **P("export", "blob"),
    shell:
        "stylepipe compile_blob"
