#!/usr/bin/env bash
# genbig.sh SERVERS POLICIES LISTEN_PORT ADMIN_PORT RS_ISSUER ES_ISSUER NULL_UPSTREAM RESOURCE [AUDIT_FILE]
# Writes to stdout a gateway Caddyfile with SERVERS servers (over SERVERS/10 tenants, each
# server routed by its own path) and POLICIES policies, plus the benchmark's own tenant
# "bench", server "null" (path /bench/mcp) and policy "bench" (listed last).
# Each generated policy names one agent, one group, one server and its tenant, so none is a
# no-op that an engine could skip.
set -euo pipefail
servers=$1 policies=$2 port=$3 admin=$4 rs=$5 es=$6 up=$7 resource=$8 audit=${9:-}
tenants=$(( servers / 10 )); (( tenants >= 1 )) || tenants=1
echo "{"
# With AUDIT_FILE, the audit log goes there through the mcp_buffered writer (as in bench/run.sh's gateway).
[[ -n $audit ]] && printf '\tlog audit {\n\t\tinclude mcp.audit\n\t\toutput mcp_buffered {\n\t\t\toutput file %s\n\t\t}\n\t}\n\tlog default {\n\t\texclude mcp.audit\n\t}\n' "$audit"
cat <<HDR
	admin 127.0.0.1:${admin}
	mcp {
		issuer ${rs} {
			jwks_uri ${rs}/keys
			algorithms RS256 ES256
			tenant_claim tenant
		}
		issuer ${es} {
			jwks_uri ${es}/keys
			algorithms RS256 ES256
			tenant_claim tenant
		}
		tenant bench {
		}
HDR
awk -v n="$tenants" 'BEGIN { for (t = 0; t < n; t++) printf "\t\ttenant t%d {\n\t\t}\n", t }'
awk -v n="$policies" -v s="$servers" -v nt="$tenants" 'BEGIN {
	for (p = 0; p < n; p++) {
		srv = p % s
		printf "\t\tpolicy p%d {\n\t\t\tallow\n\t\t\tagents client:agent-%d group:g%d\n\t\t\tservers s%d\n\t\t\ttenants t%d\n\t\t\tscopes mcp:read mcp:write\n\t\t}\n", p, p, p % 100, srv, srv % nt
	}
}'
cat <<MID
		policy bench {
			allow
			agents *
			tenants bench
			scopes *
		}
	}
}
http://127.0.0.1:${port} {
	mcp_gateway {
MID
awk -v s="$servers" -v nt="$tenants" -v up="$up" 'BEGIN {
	for (i = 0; i < s; i++)
		printf "\t\tserver s%d {\n\t\t\ttenant t%d\n\t\t\tpath /t%d/s%d/mcp\n\t\t\tupstream %s\n\t\t\trequire mcp:read\n\t\t\ttool admin_* mcp:write\n\t\t\ttool * mcp:read\n\t\t}\n", i, i % nt, i % nt, i, up
}'
cat <<TAIL
		server null {
			tenant bench
			path /bench/mcp
			upstream ${up}
			resource ${resource}
			scopes mcp:read mcp:write
			require mcp:read
			tool admin_* mcp:write
			tool * mcp:read
		}
	}
}
TAIL
