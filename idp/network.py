"""Client networks: one attacker rarely has addresses in more than one /24 (IPv4) or /64
(IPv6), so limits keyed by network hold against address hopping."""

import ipaddress


def network_of(address: str | None) -> str:
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    prefix = 24 if parsed.version == 4 else 64
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))
