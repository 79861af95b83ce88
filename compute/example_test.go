package compute_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/momentum-run/momentum/compute"
)

func ExampleTransform() {
	in := strings.NewReader("id,mass,velocity\n1,2,3\n2,0.1,0.2\n")
	st, err := compute.Transform(context.Background(), os.Stdout, in, compute.Options{})
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(st.RowsIn, "rows in,", st.RowsOut, "out")
	// Output:
	// id,mass,velocity,momentum
	// 1,2,3,6
	// 2,0.1,0.2,0.020000000000000004
	// 2 rows in, 2 out
}

func ExampleParseError() {
	in := strings.NewReader("mass,velocity\n1,2\n3,fast\n")
	_, err := compute.Transform(context.Background(), os.Stdout, in, compute.Options{})
	var perr *compute.ParseError
	if errors.As(err, &perr) && errors.Is(err, compute.ErrNotNumber) {
		fmt.Println("line", perr.Line, "column", perr.Column)
		fmt.Println(err)
	}
	// Output:
	// mass,velocity,momentum
	// 1,2,2
	// line 3 column velocity
	// line 3, column velocity: not a decimal number: "fast"
}

func ExampleTransform_headerless() {
	// The original program's input: mass,velocity lines, no header.
	in := strings.NewReader("1.5,2\n10,0.5\n")
	compute.Transform(context.Background(), os.Stdout, in, compute.Options{FixedDecimals: true, Decimals: 3})
	// Output:
	// 1.5,2,3.000
	// 10,0.5,5.000
}
