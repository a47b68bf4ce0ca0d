"""Export targets: ONNX (with parity checks), OpenVINO IR, Myriad X blobs, Johnson networks."""
