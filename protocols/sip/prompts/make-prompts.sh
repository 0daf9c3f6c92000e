#!/usr/bin/env bash
# Makes the phone prompts once (espeak-ng, Debian), as 8 kHz mono 16-bit WAV kept in the repository.
# Re-run only to change a prompt's wording; the gateway never runs this.
set -euo pipefail
cd "$(dirname "$0")"
say() {  # language voice name text
    espeak-ng -v "$2" -s 150 -w "/tmp/prompt-$1-$3.wav" "$4"
    sox "/tmp/prompt-$1-$3.wav" -r 8000 -c 1 -b 16 "$1/$3.wav" norm -3
    rm -f "/tmp/prompt-$1-$3.wav"
}
mkdir -p fr en
say fr fr enter-pin   "Bienvenue. Veuillez saisir le code de la réunion, suivi de la touche dièse."
say fr fr wrong-pin   "Ce code n'est pas valide. Veuillez réessayer."
say fr fr goodbye     "Au revoir."
say fr fr lobby       "Veuillez patienter. Un organisateur va vous faire entrer dans la réunion."
say fr fr joined      "Vous entrez dans la réunion."
say fr fr muted       "Votre micro est coupé."
say fr fr unmuted     "Votre micro est ouvert."
say en en-gb enter-pin "Welcome. Please enter the meeting PIN, followed by the hash key."
say en en-gb wrong-pin "That PIN is not valid. Please try again."
say en en-gb goodbye   "Goodbye."
say en en-gb lobby     "Please wait. A host will let you into the meeting."
say en en-gb joined    "You are joining the meeting."
say en en-gb muted     "You are muted."
say en en-gb unmuted   "You are unmuted."
