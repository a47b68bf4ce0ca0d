rule export_onnx:
    input:
        "models/encoder",
        "models/adain",
        "src/stylepipe/__init__.py",
        "src/stylepipe/adain/__init__.py",
        "src/stylepipe/adain/engine.py",
        "src/stylepipe/adain/export.py",
        "src/stylepipe/adain/fast.py",
        "src/stylepipe/adain/model.py",
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/colour.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/core/runtime.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/myriad/__init__.py",
        "src/stylepipe/export/myriad/opcheck.py",
        "src/stylepipe/export/myriad/projection.py",
        "src/stylepipe/export/myriad/target.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/detail.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/palette.py",
        "src/stylepipe/nn/statistics.py",
    output:
        directory("models/export/onnx"),
    params:
        **P("common.seed", "finish", "export"),
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
        "src/stylepipe/adain/__init__.py",
        "src/stylepipe/adain/engine.py",
        "src/stylepipe/adain/export.py",
        "src/stylepipe/adain/fast.py",
        "src/stylepipe/adain/model.py",
        "src/stylepipe/adain/openvino.py",
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/colour.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/core/runtime.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/myriad/__init__.py",
        "src/stylepipe/export/myriad/opcheck.py",
        "src/stylepipe/export/myriad/projection.py",
        "src/stylepipe/export/myriad/target.py",
        "src/stylepipe/export/onnx.py",
        "src/stylepipe/export/openvino.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/detail.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/palette.py",
        "src/stylepipe/nn/statistics.py",
    output:
        directory("models/export/openvino"),
    params:
        **P("common.seed", "finish", "export"),
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
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/export/__init__.py",
        "src/stylepipe/export/myriad/__init__.py",
        "src/stylepipe/export/myriad/blob.py",
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


rule package:
    input:
        "data/prepared",
        "models/encoder",
        "models/adain",
        "src/stylepipe/__init__.py",
        "src/stylepipe/adain/__init__.py",
        "src/stylepipe/adain/engine.py",
        "src/stylepipe/adain/fast.py",
        "src/stylepipe/adain/folder.py",
        "src/stylepipe/adain/ir.py",
        "src/stylepipe/adain/model.py",
        "src/stylepipe/adain/package.py",
        "src/stylepipe/adain/video.py",
        "src/stylepipe/apply.py",
        "src/stylepipe/core/__init__.py",
        "src/stylepipe/core/code.py",
        "src/stylepipe/core/colour.py",
        "src/stylepipe/core/config.py",
        "src/stylepipe/core/errors.py",
        "src/stylepipe/core/io.py",
        "src/stylepipe/core/media.py",
        "src/stylepipe/core/paths.py",
        "src/stylepipe/core/runtime.py",
        "src/stylepipe/core/tiling.py",
        "src/stylepipe/core/viz.py",
        "src/stylepipe/data/__init__.py",
        "src/stylepipe/data/augment.py",
        "src/stylepipe/data/datasets.py",
        "src/stylepipe/data/shards.py",
        "src/stylepipe/nn/__init__.py",
        "src/stylepipe/nn/detail.py",
        "src/stylepipe/nn/encoders.py",
        "src/stylepipe/nn/functional.py",
        "src/stylepipe/nn/layers.py",
        "src/stylepipe/nn/palette.py",
        "src/stylepipe/nn/statistics.py",
        "src/stylepipe/nn/temporal.py",
        "src/stylepipe/train/__init__.py",
        "src/stylepipe/train/checkpoint.py",
        "src/stylepipe/train/distributed.py",
        "src/stylepipe/train/loop.py",
        "src/stylepipe/train/plumbing.py",
        "src/stylepipe/train/progress.py",
        "src/stylepipe/train/schedules.py",
        "src/stylepipe/train/stopping.py",
    output:
        directory("models/stylizer"),
    params:
        **P("common.seed", "finish", "package"),
    log:
        "logs/package.log",
    conda:
        "../envs/stylepipe.yaml"
    shell:
        "stylepipe package 2> {log}"
