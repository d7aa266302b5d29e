// Command render renders a Helm chart the way `helm template` does, for CI
// on a machine without Helm: Go's text/template with sprig (Debian's
// golang-github-masterminds-sprig-dev) and Helm's own additions, written
// here after Helm's engine (pkg/engine): include, tpl, required, toYaml,
// fromYaml, toJson, fromJson, lookup (always empty, as in `helm template`),
// .Values (values.yaml coalesced with -f files and --set-file), .Release,
// .Chart, .Capabilities, .Template, .Files; `missingkey=zero` and
// "<no value>" removed, as Helm does. It is not Helm: see
// docs/deployment.md for what it cannot catch.
//
//	render [-f values.yaml]... [--set-file key=path]... [--name release] [--namespace ns] CHART_DIR
//
// prints every manifest, each starting with "---\n# Source: <chart>/templates/<file>".
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var valueFiles, setFiles multi
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Var(&setFiles, "set-file", "key.path=file: the file's contents as a value (repeatable)")
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "v1.30.0", "Capabilities.KubeVersion")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... [--set-file k=path]... CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), valueFiles, setFiles, *name, *namespace, *kube)
	if err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

func readYAML(file string) (map[string]interface{}, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	v := map[string]interface{}{}
	// As Helm: sigs.k8s.io/yaml, so numbers are float64 as in Helm.
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// coalesce merges src over dst as Helm does: maps merge key by key, anything
// else replaces, null deletes.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = v
		}
	}
	return dst
}

func setPath(vals map[string]interface{}, key string, value interface{}) {
	parts := strings.Split(key, ".")
	m := vals
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}

// Chart is .Chart, with Chart.yaml's fields under Helm's names.
type Chart struct {
	APIVersion  string `json:"apiVersion"`
	Name        string `json:"name"`
	Version     string `json:"version"`
	AppVersion  string `json:"appVersion"`
	Description string `json:"description"`
	Type        string `json:"type"`
	KubeVersion string `json:"kubeVersion"`
}

// Files is .Files: the chart's files outside templates/.
type Files map[string][]byte

// Get returns a file's contents, "" when absent (as Helm).
func (f Files) Get(name string) string { return string(f[name]) }

// Glob returns the files matching a pattern.
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for n, d := range f {
		if ok, _ := path.Match(pattern, n); ok {
			out[n] = d
		}
	}
	return out
}

// APIVersions is .Capabilities.APIVersions.
type APIVersions []string

// Has tells whether an API version (or version/kind) is available.
func (a APIVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

func render(chartDir string, valueFiles, setFiles []string, name, namespace, kube string) (string, error) {
	var chart Chart
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return "", fmt.Errorf("Chart.yaml: %w", err)
	}
	if chart.APIVersion != "v2" || chart.Name == "" || chart.Version == "" {
		return "", errors.New("Chart.yaml needs apiVersion v2, name and version")
	}
	vals, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		extra, err := readYAML(f)
		if err != nil {
			return "", err
		}
		vals = coalesce(vals, extra)
	}
	for _, kv := range setFiles {
		k, file, ok := strings.Cut(kv, "=")
		if !ok {
			return "", fmt.Errorf("--set-file %q: want key=path", kv)
		}
		content, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		setPath(vals, k, string(content))
	}

	files := Files{}
	var templates []string
	err = filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "templates/") {
			templates = append(templates, rel)
		} else if rel != "Chart.yaml" && rel != "values.yaml" {
			d, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files[rel] = d
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(templates)

	major, minor := "1", "30"
	if parts := strings.Split(strings.TrimPrefix(kube, "v"), "."); len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	top := map[string]interface{}{
		"Values": vals,
		"Chart":  chart,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": kube, "GitVersion": kube, "Major": major, "Minor": minor},
			"APIVersions": APIVersions{"v1", "apps/v1", "networking.k8s.io/v1", "policy/v1", "autoscaling/v2"},
		},
		"Files": files,
	}

	root := template.New("gotpl").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	// Helm removes these two (they would read the renderer's environment).
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(warn)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(warn)
		}
		return val, nil
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(string, interface{}) (string, error) { return "", errors.New("not initialised") }
	funcs["tpl"] = func(string, interface{}) (string, error) { return "", errors.New("not initialised") }
	root.Funcs(funcs)
	// include and tpl need the parsed set, as in Helm's engine.
	root.Funcs(template.FuncMap{
		"include": func(name string, data interface{}) (string, error) {
			var buf bytes.Buffer
			if err := root.ExecuteTemplate(&buf, name, data); err != nil {
				return "", err
			}
			return buf.String(), nil
		},
		"tpl": func(text string, data interface{}) (string, error) {
			t, err := root.Clone()
			if err != nil {
				return "", err
			}
			t, err = t.New("tpl").Parse(text)
			if err != nil {
				return "", fmt.Errorf("tpl: %w", err)
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, data); err != nil {
				return "", fmt.Errorf("tpl: %w", err)
			}
			return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
		},
	})
	for _, rel := range templates {
		text, err := os.ReadFile(filepath.Join(chartDir, rel))
		if err != nil {
			return "", err
		}
		if _, err := root.New(chart.Name + "/" + rel).Parse(string(text)); err != nil {
			return "", err
		}
	}

	var out strings.Builder
	for _, rel := range templates {
		base := path.Base(rel)
		if strings.HasPrefix(base, "_") || strings.HasSuffix(base, ".txt") {
			continue
		}
		full := chart.Name + "/" + rel
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": full, "BasePath": chart.Name + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, data); err != nil {
			return "", err
		}
		rendered := strings.ReplaceAll(buf.String(), "<no value>", "")
		for _, doc := range splitDocs(rendered) {
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, doc)
		}
	}
	return out.String(), nil
}

// splitDocs splits a rendered file at "---" lines and drops empty documents.
func splitDocs(s string) []string {
	var docs []string
	var cur []string
	flush := func() {
		doc := strings.TrimSpace(strings.Join(cur, "\n"))
		empty := true
		for _, line := range strings.Split(doc, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, doc)
		}
		cur = nil
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur = append(cur, line)
	}
	flush()
	return docs
}
