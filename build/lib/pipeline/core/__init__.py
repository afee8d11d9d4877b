"""The kernel both phases share: settings written once (`options`), files written whole
(`files`), manifests (`manifest`), the errors a user can act on (`errors`), devices
(`devices`), torchrun ranks (`ranks`) and counted multiply-adds (`flops`).

It imports nothing else of c2f. Importing this package imports none of its modules, so a
command that needs only a manifest does not pay for torch."""
