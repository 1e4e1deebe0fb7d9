"""MGN (Wang et al., ACM MM 2018) as a fastreid_ms project; the plugin module is ``projects.MGN.mgn``."""
