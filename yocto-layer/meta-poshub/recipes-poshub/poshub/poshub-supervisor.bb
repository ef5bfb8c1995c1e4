SUMMARY = "poshub-supervisor: runs the hub, feeds the watchdog, installs A/B updates"
DESCRIPTION = "Recovery checks after power loss, runs poshub as its child, sends the \
               systemd watchdog only while the hub is healthy, installs signed .poshub bundles into the \
               inactive slot and commits them through Raspberry Pi tryboot."

POSHUB_CARGO_PACKAGE = "poshub-supervisor"
POSHUB_CARGO_BIN = "poshub-supervisor"
require poshub-cargo.inc

# The supervisor starts /usr/bin/poshub.
RDEPENDS:${PN}:append:class-target = " poshub"

# Built for the build host too: poshub-bundle.bbclass runs `poshub-supervisor bundle create`.
BBCLASSEXTEND = "native"
