SUMMARY = "poshub: LAN sync hub for POS terminals"
DESCRIPTION = "Serves POS terminals over WebSocket (8765) and HTTP (8766), keeps order \
               leases, stores every change in redb and forwards it to Odoo. Run by poshub-supervisor."

POSHUB_CARGO_PACKAGE = "poshub"
POSHUB_CARGO_BIN = "poshub"
require poshub-cargo.inc

# The upstream HTTP client reads CA certificates from /etc/ssl/certs.
RDEPENDS:${PN} += "ca-certificates"
