// Package storetest is the conformance suite every compute.Store passes:
// the local folder, S3 and Cloud Storage stores run the same tests, the
// latter two against protocol servers on loopback (or real buckets).
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"testing"

	"github.com/momentum-run/momentum/compute"
)

// Options tune the suite to a store.
type Options struct {
	// LargeSize is the size of the object streamed through the store in
	// the large-object test; default DefaultLargeSize. Negative skips it,
	// and so does go test -short.
	LargeSize int64
	// Versioned says the store keeps old versions readable by
	// ReadOptions.Version after an overwrite.
	Versioned bool
	// NoVersionIDs says the store reports no Version at all.
	NoVersionIDs bool
	// Prefix is put before every key, to share a bucket between runs.
	Prefix string
}

// DefaultLargeSize is the large-object test's default: nine parts and a
// bit at the stores' 8 MiB parts, more than the eight a writer has in
// flight, so that uploads wait for a free slot and the last part is short.
// A larger object proves nothing more and the in-process servers hold it
// whole in memory.
const DefaultLargeSize = 9<<23 + 12345

// Run runs the conformance tests against s.
func Run(t *testing.T, s compute.Store, o Options) {
	if o.LargeSize == 0 {
		o.LargeSize = DefaultLargeSize
	}
	if testing.Short() {
		o.LargeSize = -1
	}
	k := func(key string) string { return o.Prefix + key }
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, s, k) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, s, k) })
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, s, k) })
	t.Run("CommitOnClose", func(t *testing.T) { testCommitOnClose(t, s, k) })
	t.Run("AbortOnCancel", func(t *testing.T) { testAbortOnCancel(t, s, k) })
	t.Run("CreateOnly", func(t *testing.T) { testCreateOnly(t, s, k) })
	t.Run("Overwrite", func(t *testing.T) { testOverwrite(t, s, k) })
	t.Run("Range", func(t *testing.T) { testRange(t, s, k) })
	t.Run("Versions", func(t *testing.T) { testVersions(t, s, k, o) })
	if c, ok := s.(compute.Composer); ok {
		t.Run("Compose", func(t *testing.T) { testCompose(t, s, c, k) })
	}
	if o.LargeSize > 0 {
		t.Run("Large", func(t *testing.T) { testLarge(t, s, k, o.LargeSize) })
	}
}

// RunCompose runs the suite's compose tests alone, for a store whose
// server falls short of the rest, such as S3 emulators without
// UploadPartCopy.
func RunCompose(t *testing.T, c interface {
	compute.Store
	compute.Composer
}, o Options) {
	testCompose(t, c, c, func(key string) string { return o.Prefix + key })
}

// Put writes data at key and fails the test on error.
func Put(t testing.TB, s compute.Store, key string, data []byte) {
	t.Helper()
	w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{ContentType: "text/csv"})
	if err != nil {
		t.Fatalf("NewWriter(%q): %v", key, err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write(%q): %v", key, err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close(%q): %v", key, err)
	}
}

// Get reads the object at key whole.
func Get(t testing.TB, s compute.Store, key string, o compute.ReadOptions) ([]byte, compute.ObjectInfo, error) {
	t.Helper()
	r, info, err := s.NewReader(context.Background(), key, o)
	if err != nil {
		return nil, info, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, info, err
}

func mustGet(t *testing.T, s compute.Store, key string) ([]byte, compute.ObjectInfo) {
	t.Helper()
	b, info, err := Get(t, s, key, compute.ReadOptions{})
	if err != nil {
		t.Fatalf("read %q: %v", key, err)
	}
	return b, info
}

func testRoundTrip(t *testing.T, s compute.Store, k func(string) string) {
	data := []byte("mass,velocity\n1,2\n")
	Put(t, s, k("roundtrip/a.csv"), data)
	got, info := mustGet(t, s, k("roundtrip/a.csv"))
	if !bytes.Equal(got, data) {
		t.Fatalf("read %q, wrote %q", got, data)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Size = %d, want %d", info.Size, len(data))
	}
	// An empty object is an object too.
	Put(t, s, k("roundtrip/empty"), nil)
	if got, info := mustGet(t, s, k("roundtrip/empty")); len(got) != 0 || info.Size != 0 {
		t.Errorf("empty object: %q, size %d", got, info.Size)
	}
}

func testKeys(t *testing.T, s compute.Store, k func(string) string) {
	for _, key := range []string{"keys/with space.csv", "keys/a+b.csv", "keys/100%.csv", "keys/%2B.csv",
		"keys/ünïcödé/😀 ж.csv", "keys/deep/er/key.csv", "keys/q?x=1&y#z.csv"} {
		data := []byte("content of " + key)
		Put(t, s, k(key), data)
		if got, _ := mustGet(t, s, k(key)); !bytes.Equal(got, data) {
			t.Errorf("key %q: read %q", key, got)
		}
	}
	// "a+b" and "a b" are different keys.
	if got, _ := mustGet(t, s, k("keys/a+b.csv")); string(got) != "content of keys/a+b.csv" {
		t.Errorf("a+b.csv read %q", got)
	}
	if _, _, err := Get(t, s, k("keys/a b.csv"), compute.ReadOptions{}); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("keys/a b.csv: err = %v, want ErrNotFound", err)
	}
}

func testNotFound(t *testing.T, s compute.Store, k func(string) string) {
	_, _, err := Get(t, s, k("notfound/nothing-here.csv"), compute.ReadOptions{})
	if !errors.Is(err, compute.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func testCommitOnClose(t *testing.T, s compute.Store, k func(string) string) {
	key := k("commit/a.csv")
	w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(bytes.Repeat([]byte("x"), 1<<20))
	if _, _, err := Get(t, s, key, compute.ReadOptions{}); !errors.Is(err, compute.ErrNotFound) {
		t.Errorf("before Close: err = %v, want ErrNotFound", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _ := mustGet(t, s, key); len(got) != 1<<20 {
		t.Errorf("after Close: %d bytes", len(got))
	}
}

func testAbortOnCancel(t *testing.T, s compute.Store, k func(string) string) {
	for _, size := range []int{10, 12 << 20} { // a single request and a multipart upload
		key := k(fmt.Sprintf("abort/%d.csv", size))
		ctx, cancel := context.WithCancel(context.Background())
		w, err := s.NewWriter(ctx, key, compute.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(bytes.Repeat([]byte("y"), size))
		cancel()
		if err := w.Close(); err == nil {
			t.Errorf("%d bytes: Close after cancel succeeded", size)
		}
		if _, _, err := Get(t, s, key, compute.ReadOptions{}); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("%d bytes: after cancel: err = %v, want ErrNotFound", size, err)
		}
	}
	// Cancelling a replacement keeps the old object.
	key := k("abort/existing.csv")
	Put(t, s, key, []byte("old"))
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.NewWriter(ctx, key, compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("new"))
	cancel()
	w.Close()
	if got, _ := mustGet(t, s, key); string(got) != "old" {
		t.Errorf("old object became %q", got)
	}
}

func testCreateOnly(t *testing.T, s compute.Store, k func(string) string) {
	key := k("createonly/a.csv")
	create := func(data string) error {
		w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{IfNotExists: true})
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte(data)); err != nil {
			return err
		}
		return w.Close()
	}
	if err := create("first"); err != nil {
		t.Fatalf("create-only write of a new key: %v", err)
	}
	if err := create("second"); !errors.Is(err, compute.ErrExists) {
		t.Fatalf("second create-only write: err = %v, want ErrExists", err)
	}
	if got, _ := mustGet(t, s, key); string(got) != "first" {
		t.Errorf("object became %q", got)
	}
	// A large create-only write that loses is refused too.
	w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{IfNotExists: true})
	if err == nil {
		w.Write(bytes.Repeat([]byte("z"), 12<<20))
		err = w.Close()
	}
	if !errors.Is(err, compute.ErrExists) {
		t.Fatalf("large create-only write over an object: err = %v, want ErrExists", err)
	}
	if got, _ := mustGet(t, s, key); string(got) != "first" {
		t.Errorf("object became %d bytes", len(got))
	}
}

func testOverwrite(t *testing.T, s compute.Store, k func(string) string) {
	key := k("overwrite/a.csv")
	Put(t, s, key, []byte("one"))
	Put(t, s, key, []byte("two"))
	if got, _ := mustGet(t, s, key); string(got) != "two" {
		t.Errorf("read %q, want two", got)
	}
}

func testRange(t *testing.T, s compute.Store, k func(string) string) {
	key := k("range/a.csv")
	Put(t, s, key, []byte("0123456789"))
	for _, c := range []struct {
		off, n int64
		want   string
	}{{0, -1, "0123456789"}, {3, 4, "3456"}, {7, -1, "789"}, {7, 100, "789"}, {0, 1, "0"}} {
		got, info, err := Get(t, s, key, compute.ReadOptions{Offset: c.off, Length: c.n})
		if err != nil || string(got) != c.want || info.Size != 10 {
			t.Errorf("range %d+%d: %q, size %d, %v; want %q, size 10", c.off, c.n, got, info.Size, err, c.want)
		}
	}
}

func testVersions(t *testing.T, s compute.Store, k func(string) string, o Options) {
	key := k("versions/a.csv")
	Put(t, s, key, []byte("v1"))
	_, v1 := mustGet(t, s, key)
	Put(t, s, key, []byte("v2"))
	_, v2 := mustGet(t, s, key)
	if !o.NoVersionIDs {
		if v1.Version == "" || v1.Version == v2.Version {
			t.Fatalf("versions %q and %q: want two distinct versions", v1.Version, v2.Version)
		}
		got, _, err := Get(t, s, key, compute.ReadOptions{Version: v2.Version})
		if err != nil || string(got) != "v2" {
			t.Errorf("read current version: %q, %v", got, err)
		}
		got, _, err = Get(t, s, key, compute.ReadOptions{Version: v1.Version})
		if o.Versioned {
			if err != nil || string(got) != "v1" {
				t.Errorf("read old version: %q, %v; want v1", got, err)
			}
		} else if !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("read replaced version: %q, %v; want ErrNotFound", got, err)
		}
	}
	if v1.ETag != "" {
		if v1.ETag == v2.ETag {
			t.Fatalf("ETag did not change on overwrite: %q", v1.ETag)
		}
		if got, _, err := Get(t, s, key, compute.ReadOptions{ETag: v2.ETag}); err != nil || string(got) != "v2" {
			t.Errorf("read with current ETag: %q, %v", got, err)
		}
		if _, _, err := Get(t, s, key, compute.ReadOptions{ETag: v1.ETag}); !errors.Is(err, compute.ErrNotFound) {
			t.Errorf("read with old ETag: err = %v, want ErrNotFound", err)
		}
	}
}

// pattern is a deterministic, incompressible stream of n bytes.
type pattern struct {
	r *rand.ChaCha8
	n int64
}

func (p *pattern) Read(b []byte) (int, error) {
	if p.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n {
		b = b[:p.n]
	}
	p.r.Read(b)
	p.n -= int64(len(b))
	return len(b), nil
}

func testLarge(t *testing.T, s compute.Store, k func(string) string, size int64) {
	key := k("large/big.csv")
	w, err := s.NewWriter(context.Background(), key, compute.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantHash := sha256.New()
	src := &pattern{r: rand.NewChaCha8([32]byte{1}), n: size}
	if _, err := io.CopyBuffer(w, io.TeeReader(src, wantHash), make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, info, err := s.NewReader(context.Background(), key, compute.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	gotHash := sha256.New()
	n, err := io.CopyBuffer(gotHash, r, make([]byte, 1<<20))
	if err != nil || n != size || info.Size != size {
		t.Fatalf("read %d bytes (size %d), %v; want %d", n, info.Size, err, size)
	}
	if !bytes.Equal(gotHash.Sum(nil), wantHash.Sum(nil)) {
		t.Fatal("large object differs")
	}
}

// OneGenerationReadAtATime wraps the handler of a fake-gcs-server so that
// it serves requests for a given generation, reads and deletes, one at a
// time: fake-gcs-server v1.56.1 races with itself on concurrent ones
// (internal/backend/memory.go, GetObjectWithGeneration copies into a
// shared slice), which the race detector reports in any test that runs
// the server in process. The gcs store pins its reads to a generation, so
// every read is one, and deletes a parallel upload's temporary objects by
// generation. A read's answer is made in memory while the lock is held
// and sent after, so that a slow client (a ranged read through a link)
// holds up no other.
func OneGenerationReadAtATime(fake http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case !r.URL.Query().Has("generation"):
			fake.ServeHTTP(w, r)
		case r.Method == http.MethodDelete:
			mu.Lock()
			defer mu.Unlock()
			fake.ServeHTTP(w, r)
		case r.Method == http.MethodGet:
			rec := &recorder{header: http.Header{}}
			mu.Lock()
			fake.ServeHTTP(rec, r)
			mu.Unlock()
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			if rec.code == 0 {
				rec.code = http.StatusOK
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body)
		default:
			fake.ServeHTTP(w, r)
		}
	})
}

// recorder keeps an answer in memory, its body in one buffer of the size
// its Content-Length gives.
type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code != 0 {
		return
	}
	r.code = code
	if n, err := strconv.Atoi(r.header.Get("Content-Length")); err == nil && n > 0 {
		r.body = make([]byte, 0, n)
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.body = append(r.body, p...)
	return len(p), nil
}

// S3PartCopy wraps the handler of a gofakes3 server with what its
// v1.2.0 lacks for composing objects: UploadPartCopy (a part PUT with
// x-amz-copy-source, served by reading the source, range and If-Match
// included, through the same server), and S3's rule that every part of a
// multipart upload but the last holds at least 5 MiB (EntityTooSmall).
func S3PartCopy(fake http.Handler) http.Handler {
	var mu sync.Mutex
	sizes := map[string]map[int]int64{} // upload id → part number → size
	record := func(id string, part int, n int64) {
		mu.Lock()
		defer mu.Unlock()
		if sizes[id] == nil {
			sizes[id] = map[int]int64{}
		}
		sizes[id][part] = n
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		id := q.Get("uploadId")
		part, _ := strconv.Atoi(q.Get("partNumber"))
		switch {
		case r.Method == http.MethodPut && id != "" && part > 0 && r.Header.Get("X-Amz-Copy-Source") != "":
			get := httptest.NewRequest(http.MethodGet, "/"+strings.TrimPrefix(r.Header.Get("X-Amz-Copy-Source"), "/"), nil)
			if rng := r.Header.Get("X-Amz-Copy-Source-Range"); rng != "" {
				get.Header.Set("Range", rng)
			}
			if m := r.Header.Get("X-Amz-Copy-Source-If-Match"); m != "" {
				get.Header.Set("If-Match", m)
			}
			src := httptest.NewRecorder()
			fake.ServeHTTP(src, get)
			if src.Code != http.StatusOK && src.Code != http.StatusPartialContent {
				w.WriteHeader(src.Code)
				w.Write(src.Body.Bytes())
				return
			}
			body := src.Body.Bytes()
			put := r.Clone(r.Context())
			for _, h := range []string{"X-Amz-Copy-Source", "X-Amz-Copy-Source-Range", "X-Amz-Copy-Source-If-Match", "Content-Md5", "X-Amz-Content-Sha256"} {
				put.Header.Del(h)
			}
			put.Body, put.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			put.Header.Set("Content-Length", strconv.Itoa(len(body)))
			res := httptest.NewRecorder()
			fake.ServeHTTP(res, put)
			if res.Code != http.StatusOK {
				w.WriteHeader(res.Code)
				w.Write(res.Body.Bytes())
				return
			}
			record(id, part, int64(len(body)))
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><CopyPartResult><LastModified>%s</LastModified><ETag>%s</ETag></CopyPartResult>`,
				time.Now().UTC().Format(time.RFC3339), html.EscapeString(res.Header().Get("ETag")))
		case r.Method == http.MethodPut && id != "" && part > 0:
			record(id, part, r.ContentLength)
			fake.ServeHTTP(w, r)
		case r.Method == http.MethodPost && id != "":
			body, _ := io.ReadAll(r.Body)
			var done struct {
				Parts []struct{ PartNumber int } `xml:"Part"`
			}
			xml.Unmarshal(body, &done)
			mu.Lock()
			for i, p := range done.Parts {
				if n := sizes[id][p.PartNumber]; i < len(done.Parts)-1 && n < 5<<20 {
					mu.Unlock()
					w.WriteHeader(http.StatusBadRequest)
					fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>EntityTooSmall</Code><Message>part %d has %d bytes</Message></Error>`, p.PartNumber, n)
					return
				}
			}
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
			fake.ServeHTTP(w, r)
		default:
			fake.ServeHTTP(w, r)
		}
	})
}

// testCompose joins objects of all sizes, among them ones S3 cannot copy
// as parts (under 5 MiB) and enough for Cloud Storage to need rounds.
func testCompose(t *testing.T, s compute.Store, c compute.Composer, k func(string) string) {
	ctx := context.Background()
	rnd := rand.New(rand.NewPCG(5, 6))
	for _, tc := range []struct {
		name  string
		sizes []int
	}{
		{"Small", []int{3, 0, 10, 1}},
		{"Mixed", []int{6 << 20, 1 << 20, 0, 7 << 20, 2}},
		{"Many", make([]int, 40)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []byte
			var srcs []string
			for i, n := range tc.sizes {
				if n == 0 && tc.name == "Many" {
					n = 1 + i
				}
				b := make([]byte, n)
				for j := range b {
					b[j] = byte('a' + rnd.IntN(26))
				}
				key := k(fmt.Sprintf("compose-%s-src-%02d", tc.name, i))
				Put(t, s, key, b)
				srcs, want = append(srcs, key), append(want, b...)
			}
			dst := k("compose-" + tc.name + "-all")
			if err := c.Compose(ctx, dst, srcs, compute.WriteOptions{ContentType: "text/csv"}); err != nil {
				t.Fatal(err)
			}
			got, _ := mustGet(t, s, dst)
			if !bytes.Equal(got, want) {
				t.Fatalf("composed %d bytes, want %d", len(got), len(want))
			}
		})
	}
	t.Run("MissingSource", func(t *testing.T) {
		Put(t, s, k("compose-miss-a"), []byte("a"))
		dst := k("compose-miss-all")
		err := c.Compose(ctx, dst, []string{k("compose-miss-a"), k("compose-miss-nope")}, compute.WriteOptions{})
		if !errors.Is(err, compute.ErrNotFound) {
			t.Fatalf("got %v, want ErrNotFound", err)
		}
		if _, _, err := Get(t, s, dst, compute.ReadOptions{}); !errors.Is(err, compute.ErrNotFound) {
			t.Fatalf("composed object left behind: %v", err)
		}
	})
}

// GCSCompose wraps the handler of a fake-gcs-server with what its v1.56.1
// lacks for composing objects as Cloud Storage does:
//
//   - ifGenerationMatch on compose (0: create-only), which the fake
//     ignores; here a destination that does not match is answered 412.
//     Conditional writes (composes and uploads with ifGenerationMatch)
//     pass through one lock, so that a check and the write after it are
//     atomic among themselves.
//   - A destination crc32c: Cloud Storage refuses a compose whose result
//     has another CRC32C; here the result is deleted and the compose
//     answered 400.
//   - deleteSourceObjects, which the fake ignores: here the sources are
//     deleted once the compose has succeeded.
//
// next serves everything else, and the requests the wrapper makes.
func GCSCompose(next http.Handler) http.Handler {
	var writes sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cond := r.URL.Query().Get("ifGenerationMatch")
		if cond != "" && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
			writes.Lock()
			defer writes.Unlock()
		}
		rest, ok := strings.CutPrefix(r.URL.EscapedPath(), "/storage/v1/b/")
		bucket, rest, _ := strings.Cut(rest, "/o/")
		dst, ok2 := strings.CutSuffix(rest, "/compose")
		if r.Method != http.MethodPost || !ok || !ok2 {
			next.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var req struct {
			SourceObjects []struct {
				Name       string `json:"name"`
				Generation int64  `json:"generation,string"`
			} `json:"sourceObjects"`
			Destination struct {
				Crc32c string `json:"crc32c"`
			} `json:"destination"`
			DeleteSourceObjects bool `json:"deleteSourceObjects"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			gcsError(w, http.StatusBadRequest, "invalid compose request: "+err.Error())
			return
		}
		object := func(method, name string, gen int64) (int, map[string]any) {
			u := "/storage/v1/b/" + bucket + "/o/" + url.PathEscape(name)
			if gen != 0 {
				u += "?generation=" + strconv.FormatInt(gen, 10)
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, httptest.NewRequest(method, u, nil))
			var attrs map[string]any
			json.Unmarshal(rec.Body.Bytes(), &attrs)
			return rec.Code, attrs
		}
		name, _ := url.PathUnescape(dst)
		if cond != "" {
			code, attrs := object(http.MethodGet, name, 0)
			if gen, _ := attrs["generation"].(string); code == http.StatusOK && gen != cond || code != http.StatusOK && cond != "0" {
				gcsError(w, http.StatusPreconditionFailed, "At least one of the pre-conditions you specified did not hold.")
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			var attrs struct {
				Crc32c     string `json:"crc32c"`
				Generation int64  `json:"generation,string"`
			}
			json.Unmarshal(rec.Body.Bytes(), &attrs)
			if want := req.Destination.Crc32c; want != "" && want != attrs.Crc32c {
				object(http.MethodDelete, name, attrs.Generation)
				gcsError(w, http.StatusBadRequest, fmt.Sprintf("Provided CRC32C %q doesn't match calculated CRC32C %q.", want, attrs.Crc32c))
				return
			}
			if req.DeleteSourceObjects {
				for _, src := range req.SourceObjects {
					object(http.MethodDelete, src.Name, src.Generation)
				}
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
	})
}

// gcsError answers as Cloud Storage does with a JSON error.
func gcsError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": code, "message": msg}})
	w.Write(b)
}
