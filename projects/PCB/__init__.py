"""PCB (Sun et al., ECCV 2018) as a fastreid_ms project; the plugin module is ``projects.PCB.pcb``."""
