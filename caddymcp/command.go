package caddymcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of `caddy mcp-explain`.
const (
	explainExitAllow = 0 // allow (including would_deny: allowed, a report policy would deny)
	explainExitDeny  = 1 // deny or step_up
	explainExitError = 2 // bad flags, unreadable config, unknown server, unreachable admin API
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-explain",
		Usage: "[--config <path> [--adapter <name>] [--environment <env>] | --address <admin>] --server <name> [--method <m>] [--tool <name> | --name <name> | --uri <uri>] [--client-id <id>] [--sub <subject>] [--group <g>]... [--claim NAME=VALUE]... [--scope <s>]... [--no-scopes] [--ip <addr>] [--json]",
		Short: "Explains the MCP gateway's policy decision for an agent, server and tool",
		Long: `
Evaluates the mcp app's policies for one request and prints the decision,
the deciding policy, the reason, and for every policy whether it matched and
why (or why not).

With --config, the config file is loaded (adapted with --adapter, or by
its name like "caddy run" does) and evaluated locally: nothing is started
and no network is used. With --address (or neither flag), the running
instance is asked through its admin API (POST /mcp/explain), so the answer
reflects the config it is running.

The agent is described by --client-id, --sub, --group (repeatable) and
--claim NAME=VALUE (repeatable; VALUE is parsed as JSON when it is valid
JSON, e.g. --claim 'roles=["admin"]', else taken as a string). The token's
scopes are given with --scope (repeatable) or a "scope" claim; with
neither, the token is assumed to carry every needed scope, so the answer is
about policy alone (--no-scopes evaluates a token without scopes).

--tool implies --method tools/call, --uri implies resources/read; with no
method and no item, only the server's require scopes are needed (as for a
GET or DELETE).

Exit status: 0 when the request is allowed (also when a report-mode policy
would deny it), 1 when denied or answered with a step-up challenge, 2 on
errors.
`,
		CobraFunc: func(cmd *cobra.Command) {
			explainFlags(cmd.Flags())
			cmd.RunE = func(cmd *cobra.Command, args []string) error {
				code, err := cmdMCPExplain(caddycmd.Flags{FlagSet: cmd.Flags()}, os.Stdout)
				if err == nil && code == explainExitDeny {
					// Exit 1 without an error message: the decision was printed.
					cmd.SilenceErrors = true
					return errExplainDenied
				}
				return caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, err })(cmd, args)
			}
		},
	})
}

var errExplainDenied = errors.New("request not allowed")

// explainFlags defines the command's flags on fs.
func explainFlags(fs *pflag.FlagSet) {
	fs.StringP("config", "c", "", "Configuration file to evaluate (instead of asking the running instance)")
	fs.StringP("adapter", "a", "", "Name of config adapter to apply (with --config)")
	fs.String("environment", "", "Evaluate in this environment instead of the config's (with --config)")
	fs.String("address", "", "The address of the running instance's admin API (default: from the default config)")
	fs.String("server", "", "The MCP server (required)")
	fs.String("tenant", "", "The server's tenant (optional; checked)")
	fs.String("method", "", "JSON-RPC method (default tools/call with --tool/--name, resources/read with --uri)")
	fs.String("tool", "", "Tool name")
	fs.String("name", "", "Tool or prompt name (with --method prompts/get)")
	fs.String("uri", "", "Resource URI")
	fs.String("client-id", "", "The agent's client id")
	fs.String("sub", "", "The token's subject")
	fs.StringArray("group", nil, "A group of the agent (repeatable)")
	fs.StringArray("claim", nil, "A token claim NAME=VALUE (repeatable)")
	fs.StringArray("scope", nil, "A scope of the token (repeatable)")
	fs.Bool("no-scopes", false, "The token has no scopes")
	fs.String("ip", "", "The client IP")
	fs.Bool("json", false, "Print the explanation as JSON")
}

// explainRequestFromFlags builds the request from the command's flags.
func explainRequestFromFlags(fl caddycmd.Flags) (*ExplainRequest, error) {
	req := &ExplainRequest{
		Server: fl.String("server"), Tenant: fl.String("tenant"), Method: fl.String("method"),
		Tool: fl.String("tool"), Name: fl.String("name"), URI: fl.String("uri"),
		ClientID: fl.String("client-id"), Sub: fl.String("sub"), IP: fl.String("ip"),
	}
	if req.Server == "" {
		return nil, errors.New("--server is required")
	}
	var err error
	if req.Groups, err = fl.GetStringArray("group"); err != nil {
		return nil, err
	}
	claims, err := fl.GetStringArray("claim")
	if err != nil {
		return nil, err
	}
	for _, c := range claims {
		name, value, ok := strings.Cut(c, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--claim %q: want NAME=VALUE", c)
		}
		if req.Claims == nil {
			req.Claims = map[string]any{}
		}
		req.Claims[name] = claimValue(value)
	}
	scopes, err := fl.GetStringArray("scope")
	if err != nil {
		return nil, err
	}
	for _, s := range scopes {
		req.Scopes = append(req.Scopes, strings.Fields(s)...)
	}
	if fl.Bool("no-scopes") {
		if len(req.Scopes) > 0 {
			return nil, errors.New("--no-scopes and --scope exclude each other")
		}
		req.Scopes = []string{}
	}
	return req, nil
}

// claimValue parses v as JSON when it is a JSON array, object, number,
// boolean or quoted string; anything else is a plain string.
func claimValue(v string) any {
	var out any
	if v != "" && json.Unmarshal([]byte(v), &out) == nil && out != nil {
		return out
	}
	return v
}

// cmdMCPExplain runs the command and prints the result to w.
func cmdMCPExplain(fl caddycmd.Flags, w io.Writer) (int, error) {
	req, err := explainRequestFromFlags(fl)
	if err != nil {
		return explainExitError, err
	}
	var res *ExplainResult
	if cfgFile := fl.String("config"); cfgFile != "" {
		if fl.String("address") != "" {
			return explainExitError, errors.New("--config and --address exclude each other")
		}
		cfgJSON, _, _, err := caddycmd.LoadConfig(cfgFile, fl.String("adapter"))
		if err != nil {
			return explainExitError, err
		}
		ec, err := explainConfigFromJSON(cfgJSON, fl.String("environment"))
		if err != nil {
			return explainExitError, err
		}
		if res, err = ec.explain(req); err != nil {
			return explainExitError, err
		}
	} else {
		if fl.String("environment") != "" || fl.String("adapter") != "" {
			return explainExitError, errors.New("--environment and --adapter need --config")
		}
		if res, err = explainRemote(fl.String("address"), req); err != nil {
			return explainExitError, err
		}
	}
	if fl.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return explainExitError, err
		}
	} else {
		printExplanation(w, res)
	}
	return explainExitCode(res), nil
}

// explainExitCode is 0 for allowed requests, 1 otherwise.
func explainExitCode(res *ExplainResult) int {
	if res.Decision.Allowed {
		return explainExitAllow
	}
	return explainExitDeny
}

// explainRemote asks the running instance.
func explainRemote(address string, req *ExplainRequest) (*ExplainResult, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(address, nil, "", "")
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, http.MethodPost, "/mcp/explain", nil, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res ExplainResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&res); err != nil {
		return nil, fmt.Errorf("decoding the admin API's answer: %v", err)
	}
	return &res, nil
}

// printExplanation writes res as a readable report.
func printExplanation(w io.Writer, res *ExplainResult) {
	d := &res.Decision
	line := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", k+":", v) }
	list := func(s []string) string {
		if len(s) == 0 {
			return "(none)"
		}
		return strings.Join(s, " ")
	}
	line("decision", res.Result)
	if d.Policy != "" {
		line("policy", d.Policy)
	}
	if d.Reason != "" {
		line("reason", d.Reason)
	}
	if len(d.Missing) > 0 {
		line("missing", list(d.Missing))
	}
	if d.WouldDeny {
		would := d.WouldReason
		if d.WouldPolicy != "" {
			would = d.WouldPolicy + ": " + would
		}
		line("report", "would deny ("+would+")")
	}
	target := res.Method
	if target == "" {
		target = "(server only)"
	}
	if res.Target != "" {
		target += " " + res.Target
	}
	line("server", fmt.Sprintf("%s (tenant %s, environment %s)", res.Server, res.Tenant, res.Environment))
	line("request", target)
	line("needs", list(res.Need))
	token := list(res.TokenScopes)
	if res.ScopesAssumed {
		token += " (assumed)"
	}
	line("token", token)
	line("effective", list(d.Effective))
	for _, n := range res.Notes {
		line("note", n)
	}
	fmt.Fprintln(w)
	if len(res.Policies) == 0 {
		fmt.Fprintln(w, "no policies configured (nothing is allowed)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "POLICY\tEFFECT\tMODE\tMATCHED\tCOVERS\tWHY")
	for _, p := range res.Policies {
		matched := "no"
		if p.Matched {
			matched = "yes"
		}
		if !p.Active {
			matched = "inactive"
		}
		covers := "-"
		if len(p.Covers) > 0 {
			covers = strings.Join(p.Covers, " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Effect, p.Mode, matched, covers, p.Why)
	}
	_ = tw.Flush()
}
