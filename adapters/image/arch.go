package image

// GOARCH returns the architecture as Go and image platforms name it,
// accepting Lambda's name too: x86_64 is amd64. Other names come back
// as they are.
func GOARCH(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	}
	return arch
}
