#!/bin/sh
# One-shot: once the server is healthy, make sure the namespace exists and holds the
# search attributes that operators filter referrals on. Safe to run again.
set -eu
ADDRESS=${TEMPORAL_ADDRESS:-temporal:7233}
NAMESPACE=${TEMPORAL_NAMESPACE:-default}
RETENTION=${TEMPORAL_RETENTION:-30d}

attempt=0
until temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1; do
  attempt=$((attempt + 1))
  [ "$attempt" -lt 60 ] || { echo "Temporal at $ADDRESS is not healthy"; exit 1; }
  sleep 2
done

temporal operator namespace describe --address "$ADDRESS" -n "$NAMESPACE" >/dev/null 2>&1 ||
  temporal operator namespace create --address "$ADDRESS" -n "$NAMESPACE" --retention "$RETENTION"

# A new namespace can take a few seconds to be usable everywhere.
attempt=0
until existing=$(temporal operator search-attribute list --address "$ADDRESS" -n "$NAMESPACE"); do
  attempt=$((attempt + 1))
  [ "$attempt" -lt 30 ] || { echo "namespace $NAMESPACE is not usable"; exit 1; }
  sleep 2
done
for attribute in ReferralStatus:Keyword PartnerId:Keyword RfiId:Keyword Region:Keyword \
                 RespondBy:Datetime; do
  name=${attribute%%:*}
  type=${attribute#*:}
  if echo "$existing" | grep -qw "$name"; then
    echo "search attribute $name exists"
  else
    temporal operator search-attribute create --address "$ADDRESS" -n "$NAMESPACE" \
      --name "$name" --type "$type"
  fi
done
echo "namespace $NAMESPACE is ready for referrals"
