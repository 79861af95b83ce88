package compute

// A Reject is one bad row of a skip-mode run: one record of the rejects
// file, whose columns are the csv tags.
type Reject struct {
	Line   int64  `csv:"line"`   // 1-based physical line where the bad field or record starts
	Column string `csv:"column"` // as ParseError.Column
	Reason string `csv:"reason"` // as ParseError.Reason
	Record string `csv:"record"` // the record as read, without its line break
}

// A RejectWriter writes the rejects file of a skip-mode run. The kernel
// calls WriteHeader first, except in a shard after the first (whose
// rejects follow the first shard's), then Write with the rejects of each
// chunk, in input order; each call writes through before it returns.
// compute has no encoder of its own: the binary gives one
// (adapters/rejects) through Options.NewRejectWriter.
type RejectWriter interface {
	WriteHeader() error
	Write(rejects []Reject) error
}

// discardRejects is a RejectWriter that writes nothing, for rereading
// input whose rejects were already written.
type discardRejects struct{}

func (discardRejects) WriteHeader() error   { return nil }
func (discardRejects) Write([]Reject) error { return nil }
