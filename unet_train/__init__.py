"""unet_train: the run machinery around the paper's U-Net (:mod:`unet_core`).

A config (:mod:`.config`), one assembly step, the training loop (:mod:`.train`), run folders
and atomic checkpoints (:mod:`.runs`, :mod:`.checkpoint`), devices and precision
(:mod:`.devices`, :mod:`.placement`), several processes (:mod:`.distributed`), what made a
result (:mod:`.provenance`, :mod:`.probe`), evaluation of a run (:mod:`.evaluation`), the command
line (``python -m unet_train train|evaluate|predict``) and ``predict`` with the FOV estimate.
It imports :mod:`unet_core`; :mod:`unet_core` never imports it.
"""
