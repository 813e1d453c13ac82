"""The frozen text towers with learnable context vectors (CoOp) that FAUD-CLIP's learnable prompts
train behind: CLIP's and a sentence-transformer's. Their own module, imported by an encoder's
``context_tower`` when a head asks for one: the encoder modules are imported by every process that
registers encoders (each command, flow run and Dask worker), and a class of torch's at their top
level would make each of them import torch (~2.5 s) before it knows it has work (a rerun that skips,
a run whose chunks go to a Dask cluster, a MediaPipe-and-MFCC run)."""

from __future__ import annotations

import torch

from stages.extraction.encoders.base import EncoderError


class ClipContextTower(torch.nn.Module):
    """CLIP's text tower with M learnable context vectors after the start token (CoOp):
    [SOT, ctx_1 … ctx_M, prompt tokens, EOT] → the transformer → the EOT token → the projection."""

    def __init__(self, model: torch.nn.Module, tokenizer, prompts: list[str]):
        super().__init__()
        if getattr(model, "text_pool_type", "argmax") != "argmax" or not hasattr(model, "token_embedding"):
            raise EncoderError("learnable context needs a CLIP text tower pooled at its end token")
        self.model = model
        self.token_dim = int(model.token_embedding.weight.shape[1])
        self.prompts = list(prompts)
        self.tokenizer = tokenizer
        for p in self.model.parameters():
            p.requires_grad_(False)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        m, model = context.shape[0], self.model
        length = model.positional_embedding.shape[0]
        # the prompts tokenised into what the context leaves of the tower's length
        text = self.tokenizer(self.prompts, context_length=length - m).to(context.device)
        cast = model.transformer.get_cast_dtype()
        embedded = model.token_embedding(text).to(cast)
        n = embedded.shape[0]
        x = torch.cat([embedded[:, :1], context.to(cast).expand(n, -1, -1), embedded[:, 1:]], 1)
        x = model.transformer(x + model.positional_embedding.to(cast), attn_mask=model.attn_mask)
        x = model.ln_final(x)
        pooled = x[torch.arange(n, device=x.device), text.argmax(-1) + m]  # the end token, moved by M
        projection = model.text_projection
        return projection(pooled) if isinstance(projection, torch.nn.Linear) else pooled @ projection


class SentenceContextTower(torch.nn.Module):
    """A mean-pooled sentence-transformer with M learnable context vectors after [CLS] (CoOp):
    [CLS, ctx_1 … ctx_M, prompt tokens, SEP] → the transformer → the mean over the unpadded tokens
    (context included) → normalised where the model normalises."""

    def __init__(self, model, prompts: list[str]):
        super().__init__()
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling

        pooling = [m for m in model if isinstance(m, Pooling)]
        if not pooling or pooling[0].pooling_mode != "mean":
            raise EncoderError("learnable context needs a mean-pooled sentence-transformer")
        self.normalise = any(isinstance(m, Normalize) for m in model)
        self.transformer = model[0].auto_model
        self.token_dim = int(self.transformer.get_input_embeddings().weight.shape[1])
        tokens = model.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        self.register_buffer("ids", tokens["input_ids"], persistent=False)
        self.register_buffer("mask", tokens["attention_mask"], persistent=False)
        for p in self.transformer.parameters():
            p.requires_grad_(False)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        n, m = self.ids.shape[0], context.shape[0]
        embedded = self.transformer.get_input_embeddings()(self.ids)
        x = torch.cat([embedded[:, :1], context.expand(n, -1, -1), embedded[:, 1:]], 1)
        mask = torch.cat([self.mask[:, :1], self.mask.new_ones(n, m), self.mask[:, 1:]], 1)
        hidden = self.transformer(inputs_embeds=x, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalise else pooled
