"""Privacy lifecycle: deletion reaching Segment (regulations), purging the state store, access requests."""
