package challenge

// MemoryStore is the embedded Store (patrickmn/go-cache), for one process.
type MemoryStore struct{}

// var _ Store = (*MemoryStore)(nil) // enable once implemented

// NewMemoryStore returns a store holding at most maxPending pending codes
// (0 means 200,000).
func NewMemoryStore(maxPending int) *MemoryStore { panic("unimplemented") }
