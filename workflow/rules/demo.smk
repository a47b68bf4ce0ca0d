rule demo:
    input:
        "data/prepared",
        "models/adain",
        "models/export/onnx",
        "models/export/openvino",
        "models/export/blob",
        "src/stylepipe/demo/oak.py",
        "src/stylepipe/demo/host.py",
        "src/stylepipe/demo/clip.py",
    output:
        directory("demo"),
    params:
        **P("export", "demo"),
    shell:
        "stylepipe demo"
