# The damage campaign of snap_damage.sh, on the next seeds (25.. by
# default, or STASIS_DAMAGE_SEED + STASIS_DAMAGE_RUNS): together the two
# restore 48 damaged snapshots.
DAMAGE_FIRST_SEED=$((${STASIS_DAMAGE_SEED:-1} + ${STASIS_DAMAGE_RUNS:-24}))
. "$(dirname "$0")/snap_damage.sh"
