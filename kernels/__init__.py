"""Fused kernels, installed as `actfusion_sdk.kernels`: `autograd` and `dilated_attention` (Triton; importing
them imports triton) and `cpu` (a C kernel compiled on first use; no triton). No model code here."""
