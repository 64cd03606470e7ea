"""KubeEdge DeviceTwin: the MQTT eventbus protocol and the DMI gRPC mapper interface."""
