#!/bin/sh
# Writes each /etc/nginx/templates/NAME.template to /etc/nginx/conf.d/NAME with
# the environment's ${VARIABLES} filled in (only those defined, and among them
# only those matching NGINX_ENVSUBST_FILTER if set), as the official image
# does. NGINX_ENVSUBST_TEMPLATE_DIR, _TEMPLATE_SUFFIX and _OUTPUT_DIR change
# the folders and the suffix.
set -e

template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
filter=${NGINX_ENVSUBST_FILTER:-}

[ -d "$template_dir" ] || exit 0
if [ ! -w "$output_dir" ]; then
	echo "$0: ERROR: $template_dir exists, but $output_dir is not writable" >&2
	exit 0
fi

names=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' | grep -E -- "${filter:-.}" || true)
defined=
for n in $names; do
	defined="$defined \${$n}"
done

find "$template_dir" -follow -type f -name "*$suffix" -print | while read -r template; do
	relative=${template#"$template_dir/"}
	output=$output_dir/${relative%"$suffix"}
	mkdir -p "$(dirname "$output")"
	echo "$0: Running envsubst on $template to $output"
	envsubst "$defined" <"$template" >"$output"
done
