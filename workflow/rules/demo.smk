rule demo:
    input:
        "models/encoder",
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
    log:
        "logs/demo.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe demo 2> {log}"
