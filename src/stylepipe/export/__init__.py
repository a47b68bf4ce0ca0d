"""Generic export tools (ONNX with parity checks, OpenVINO IR) and the device targets that plug in (myriad/)."""
