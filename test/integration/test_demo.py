"""The README's first command: the demo converges both peerings and prints what it wrote."""

from __future__ import annotations

import io

from test_leader_election import free_port

from harness.demo import demo


def test_demo_converges_and_reports_both_peerings(control_plane: object) -> None:
    out = io.StringIO()
    code = demo(
        out=out, once=True, metrics_address=f"127.0.0.1:{free_port()}", probe_address=f"127.0.0.1:{free_port()}"
    )
    text = out.getvalue()
    assert code == 0, text
    assert "liqo-tenant-rome/rome -> FirewallConfiguration liqosec-rome" in text
    assert "liqo-tenant-milan/milan -> FirewallConfiguration liqosec-milan" in text
    assert text.count("Ready=True") == 2
    assert "StatelessFiltering=True" in text
    rows = {line.split()[1]: line.split()[2:] for line in text.splitlines() if line.strip()[:2].strip().isdigit()}
    assert rows["shop-rome/cart-0"][0] == "-"  # an offloaded pod of rome cannot reach default/web
    assert rows["default/web"][1] == "Y"  # local traffic is untouched
