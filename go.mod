module github.com/momentum-run/momentum

go 1.26
