"""Every string the panel shows, in English and Spanish.

Templates read them through ``t.<name>``; :func:`pick_language` chooses the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"

STRINGS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "html_lang": "en",
        "panel": "Client Panel",
        "switch_to": "Español",
        "switch_lang": "es",
        "login_title": "Sign in to the Client Panel",
        "client_number": "Client number",
        "access_key": "Access key",
        "sign_in": "Sign in",
        "forgot_link": "Forgot your client number or key?",
        "login_failed": "That client number and access key do not match. Check both and try again.",
        "signed_in_title": "Signed in",
        "signed_in_as": "Signed in as client {number}.",
        "sign_out": "Sign out",
        "forgot_title": "Recover your access details",
        "forgot_intro": (
            "Choose one detail of your account and type it. We will mail a "
            "confirmation link, or a code to type here, to the account's primary "
            "email address."
        ),
        "identifier": "Recover by",
        "kind_domain": "Domain name",
        "kind_client_number": "Client number",
        "kind_email": "Primary email address",
        "value": "Value",
        "value_hint": "For example ejemploxmundo.com.ar, 9000 or the primary address.",
        "send": "Send the link",
        "sent_title": "Check your mail",
        "sent_body": (
            "If that detail belongs to one of our clients, a confirmation link is on "
            "its way to the account's primary email address. The link works once "
            "and expires within the hour."
        ),
        "back_to_login": "Back to sign in",
        "confirm_title": "Send my access details",
        "confirm_body": (
            "Press Confirm to receive your client number and a new access key by "
            "mail. Your current access key stops working as soon as you do."
        ),
        "confirm_button": "Confirm",
        "done_title": "Access details sent",
        "done_body": (
            "Your client number and a new access key were mailed to the account's "
            "primary email address. Use them to sign in."
        ),
        "go_to_login": "Go to sign in",
        "expired_title": "This link has expired",
        "expired_body": "Confirmation links last one hour. Ask for a new one.",
        "used_title": "This link was already used",
        "used_body": (
            "The link was used before, or the access details changed after it was "
            "sent. If you still need them, ask for a new link."
        ),
        "invalid_title": "This link is not valid",
        "invalid_body": "Open the link from the mail in full, or ask for a new one.",
        "ask_again": "Ask for a new link",
        "limited_title": "Too many attempts",
        "limited_body": "Wait {seconds} seconds and try again.",
        "delivery_title": "The mail could not be sent",
        "delivery_temporary": "Nothing changed yet. Open the same link again in a few minutes.",
        "delivery_permanent": "Nothing changed. Contact support.",
        "unavailable_title": "Service unavailable",
        "unavailable_body": "Try again in a few minutes.",
        "csrf_title": "The form expired",
        "csrf_body": "Reload the page and send the form again.",
        "not_found_title": "Page not found",
        "not_found_body": "There is nothing at this address.",
        "change_title": "Choose your own access key",
        "change_intro": (
            "The key you signed in with was mailed to you. Choose a key of your "
            "own to go on: at least 15 characters; a few words make a good one."
        ),
        "current_key": "Access key from the mail",
        "new_key": "New access key",
        "change_button": "Save my key",
        "change_wrong_key": "That is not your current access key.",
        "send_code": "Send me a code instead",
        "code_title": "Type the code from the mail",
        "code_intro": (
            "If that detail belongs to one of our clients, a code is on its way to "
            "the account's primary email address. Type it here to receive your "
            "client number and a new access key. The code expires within 15 "
            "minutes."
        ),
        "code_label": "Code",
        "code_hint": "Eight letters and digits, such as WDJH-MJHT.",
        "code_wrong": (
            "That code is not right. Check it and type it again; after three wrong "
            "codes, ask for a new one."
        ),
        "code_expired_title": "This code has expired",
        "code_expired_body": "Codes last 15 minutes. Ask for a new one.",
        "ask_new_code": "Ask for a new code",
    },
    "es": {
        "html_lang": "es",
        "panel": "Panel de Clientes",
        "switch_to": "English",
        "switch_lang": "en",
        "login_title": "Ingresar al Panel de Clientes",
        "client_number": "Número de cliente",
        "access_key": "Clave de acceso",
        "sign_in": "Ingresar",
        "forgot_link": "¿Olvidó su número de cliente o su clave?",
        "login_failed": (
            "El número de cliente y la clave de acceso no coinciden. Revise ambos "
            "e intente de nuevo."
        ),
        "signed_in_title": "Sesión iniciada",
        "signed_in_as": "Ingresó como cliente {number}.",
        "sign_out": "Salir",
        "forgot_title": "Recupere sus datos de acceso",
        "forgot_intro": (
            "Elija un dato de su cuenta y escríbalo. Enviaremos un enlace de "
            "confirmación, o un código para escribir aquí, a la dirección de "
            "correo primaria de la cuenta."
        ),
        "identifier": "Recuperar por",
        "kind_domain": "Nombre de dominio",
        "kind_client_number": "Número de cliente",
        "kind_email": "Dirección de correo primaria",
        "value": "Dato",
        "value_hint": "Por ejemplo ejemploxmundo.com.ar, 9000 o la dirección primaria.",
        "send": "Enviar el enlace",
        "sent_title": "Revise su correo",
        "sent_body": (
            "Si ese dato pertenece a uno de nuestros clientes, enviamos un enlace de "
            "confirmación a la dirección de correo primaria de la cuenta. El enlace "
            "sirve una sola vez y vence dentro de una hora."
        ),
        "back_to_login": "Volver a ingresar",
        "confirm_title": "Enviar mis datos de acceso",
        "confirm_body": (
            "Pulse Confirmar para recibir por correo su número de cliente y una "
            "clave de acceso nueva. La clave actual deja de funcionar en ese "
            "momento."
        ),
        "confirm_button": "Confirmar",
        "done_title": "Datos de acceso enviados",
        "done_body": (
            "Enviamos su número de cliente y una clave de acceso nueva a la dirección "
            "de correo primaria de la cuenta. Úselos para ingresar."
        ),
        "go_to_login": "Ir a ingresar",
        "expired_title": "Este enlace venció",
        "expired_body": "Los enlaces de confirmación duran una hora. Pida uno nuevo.",
        "used_title": "Este enlace ya fue usado",
        "used_body": (
            "El enlace se usó antes, o los datos de acceso cambiaron después de "
            "enviarlo. Si todavía los necesita, pida un enlace nuevo."
        ),
        "invalid_title": "Este enlace no es válido",
        "invalid_body": "Abra el enlace del correo completo, o pida uno nuevo.",
        "ask_again": "Pedir un enlace nuevo",
        "limited_title": "Demasiados intentos",
        "limited_body": "Espere {seconds} segundos e intente de nuevo.",
        "delivery_title": "No se pudo enviar el correo",
        "delivery_temporary": "Todavía no cambió nada. Abra el mismo enlace en unos minutos.",
        "delivery_permanent": "No cambió nada. Comuníquese con soporte.",
        "unavailable_title": "Servicio no disponible",
        "unavailable_body": "Intente de nuevo en unos minutos.",
        "csrf_title": "El formulario venció",
        "csrf_body": "Recargue la página y envíe el formulario de nuevo.",
        "not_found_title": "Página no encontrada",
        "not_found_body": "No hay nada en esta dirección.",
        "change_title": "Elija su propia clave de acceso",
        "change_intro": (
            "La clave con la que ingresó le llegó por correo. Elija una clave "
            "propia para seguir: al menos 15 caracteres; unas cuantas palabras "
            "sirven bien."
        ),
        "current_key": "Clave de acceso del correo",
        "new_key": "Clave de acceso nueva",
        "change_button": "Guardar mi clave",
        "change_wrong_key": "Esa no es su clave de acceso actual.",
        "send_code": "Mejor envíenme un código",
        "code_title": "Escriba el código del correo",
        "code_intro": (
            "Si ese dato pertenece a uno de nuestros clientes, enviamos un código a "
            "la dirección de correo primaria de la cuenta. Escríbalo aquí para "
            "recibir su número de cliente y una clave de acceso nueva. El código "
            "vence dentro de 15 minutos."
        ),
        "code_label": "Código",
        "code_hint": "Ocho letras y dígitos, por ejemplo WDJH-MJHT.",
        "code_wrong": (
            "Ese código no es correcto. Revíselo y escríbalo de nuevo; después de "
            "tres códigos equivocados, pida uno nuevo."
        ),
        "code_expired_title": "Este código venció",
        "code_expired_body": "Los códigos duran 15 minutos. Pida uno nuevo.",
        "ask_new_code": "Pedir un código nuevo",
    },
}


def pick_language(asked: str | None, saved: str | None, accepted: Iterable[str]) -> str:
    """The UI language: an explicit ``?lang=``, else the saved choice, else the browser's.

    ``accepted`` is the browser's languages, best first (``Accept-Language``);
    only their primary subtag counts, so ``es-AR`` picks Spanish.
    """
    for choice in (asked, saved):
        if choice in LANGUAGES:
            return choice
    for language in accepted:
        primary = language.split("-", 1)[0].lower()
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE
