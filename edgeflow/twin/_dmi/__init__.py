"""The DMI v1beta1 ``.proto`` and the stubs grpcio-tools generates from it (not committed; see
:mod:`edgeflow.twin.dmi_codegen`)."""
