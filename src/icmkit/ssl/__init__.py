"""Self-supervised pre-training of classifier backbones: DICM's stage 1, MoCo v2 with semantic-guided crops.

- :mod:`.encoder` — a timm / torchvision classifier as MoCo's encoder (trunk, pooling, MLP projection head);
- :mod:`.moco` — InfoNCE, the queue of negatives, the momentum key encoder;
- :mod:`.shuffle` — MoCo's shuffling BN, within one process and across DDP ranks;
- :mod:`.crops` — activation-map boxes, ContrastiveCrop sampling, MoCo v2 augmentations;
- :mod:`.contact_sheet` — the boxes drawn on thumbnails (``crops.png`` of a run);
- :mod:`.filtered` — the encoder with DICM's redundancy-elimination module between head and tail (stage 3).

The training loops are :mod:`icmkit.train.ssl_loop` (``icm train`` with ``architecture: moco-v2``) and
:mod:`icmkit.train.ssl_joint_loop` (the same with ``ssl_re_from``).
"""
