"""liqosec: per-peering network security for Liqo peerings."""
