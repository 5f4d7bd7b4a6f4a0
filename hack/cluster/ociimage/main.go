// Command ociimage writes a single-layer OCI image layout tar from files on disk, for
// `ctr images import`: the test cluster has no registry and no image builder, and Herald's
// images are a static binary plus a few files.
//
//	ociimage -o herald.tar -name herald.local/herald:dev -user 65532:65532 \
//	  -entrypoint /herald -add bin/herald=/herald -add /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt
package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"
)

// adds collects repeated -add source=destination flags.
type adds []string

func (a *adds) String() string     { return strings.Join(*a, ",") }
func (a *adds) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	var files adds
	out := flag.String("o", "", "output tar")
	name := flag.String("name", "", "image name, e.g. herald.local/herald:dev")
	user := flag.String("user", "65532:65532", "user:group the image runs as")
	entrypoint := flag.String("entrypoint", "", "entrypoint, space separated")
	flag.Var(&files, "add", "source=destination (repeatable); destination mode follows the source")
	flag.Parse()
	if *out == "" || *name == "" || len(files) == 0 {
		fmt.Fprintln(os.Stderr, "usage: ociimage -o out.tar -name repo:tag [-user u:g] [-entrypoint cmd] -add src=dst...")
		os.Exit(2)
	}
	if err := write(*out, *name, *user, strings.Fields(*entrypoint), files); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

// epoch keeps the layer byte-identical for identical inputs, so an unchanged binary gives
// the same image id and a re-import is a no-op.
var epoch = time.Unix(0, 0)

func write(out, name, user string, entrypoint []string, files []string) error {
	layer, err := buildLayer(user, files)
	if err != nil {
		return err
	}
	layerDigest := digest(layer)
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config": map[string]any{
			"User":       user,
			"Entrypoint": entrypoint,
			"Env":        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
			"WorkingDir": "/",
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return fmt.Errorf("encoding the image config: %w", err)
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer)},
	})
	if err != nil {
		return fmt.Errorf("encoding the manifest: %w", err)
	}
	tag := name[strings.LastIndex(name, ":")+1:]
	md := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tag,
	}
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []any{md}})
	if err != nil {
		return fmt.Errorf("encoding the index: %w", err)
	}

	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(config), config},
		{blobPath(manifest), manifest},
		{blobPath(layer), layer},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: epoch}); err != nil {
			return fmt.Errorf("writing %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("writing %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// buildLayer puts the files, their parent directories, a writable /tmp and the passwd and
// group entries of user (so tools that look the user up find it) in one uncompressed tar.
func buildLayer(user string, files []string) ([]byte, error) {
	uid, gid, _ := strings.Cut(user, ":")
	contents := map[string][]byte{
		"etc/passwd": []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + uid + ":" + gid + ":nonroot:/home/nonroot:/sbin/nologin\n"),
		"etc/group":  []byte("root:x:0:\nnonroot:x:" + gid + ":\n"),
	}
	modes := map[string]int64{"etc/passwd": 0o644, "etc/group": 0o644}
	for _, spec := range files {
		src, dst, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("-add %q: want source=destination", spec)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, err)
		}
		info, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		dst = strings.TrimPrefix(path.Clean("/"+dst), "/")
		contents[dst] = data
		modes[dst] = int64(info.Mode().Perm())
	}
	dirs := map[string]int64{"tmp": 0o1777, "home": 0o755, "home/nonroot": 0o755}
	for name := range contents {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	var names []string
	for d := range dirs {
		names = append(names, d+"/")
	}
	for f := range contents {
		names = append(names, f)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		h := &tar.Header{Name: n, ModTime: epoch, Format: tar.FormatPAX}
		if strings.HasSuffix(n, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, dirs[strings.TrimSuffix(n, "/")]
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, modes[n], int64(len(contents[n]))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(contents[n]); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", n, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:") }

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
}
