"""Demos: the OAK-1 DepthAI pipeline and the host video/webcam renderer."""
