package compute

import (
	"encoding/csv"
	"io"
	"strconv"
)

// csvRejects is a RejectWriter over encoding/csv for the kernel's own
// tests, which cannot import the product's (adapters/rejects, over
// gocsv); cmd/momentum's golden test holds the product's bytes.
type csvRejects struct{ w *csv.Writer }

func newCSVRejects(w io.Writer) RejectWriter { return csvRejects{csv.NewWriter(w)} }

func (c csvRejects) WriteHeader() error {
	c.w.Write([]string{"line", "column", "reason", "record"})
	c.w.Flush()
	return c.w.Error()
}

func (c csvRejects) Write(rejects []Reject) error {
	for _, rj := range rejects {
		c.w.Write([]string{strconv.FormatInt(rj.Line, 10), rj.Column, rj.Reason, rj.Record})
	}
	c.w.Flush()
	return c.w.Error()
}
