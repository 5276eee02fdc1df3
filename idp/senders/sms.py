"""SMS senders: vonage (production, through the official SDK), console and file (development)."""

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as NoAnswerInTime
from importlib.metadata import version

from idp.errors import ConfigurationError, SendError, SendUnconfirmed
from idp.senders.messages import Sms, SmsReceipt
from idp.senders.outbox import FileOutbox, print_loudly

# The SDK logs request bodies (the PIN, the API secret) at DEBUG and error bodies at WARNING.
for _name in ("vonage", "vonage_http_client", "vonage_sms"):
    logging.getLogger(_name).setLevel(logging.ERROR)

# Threads that make the SDK's calls, a request waiting for its own call at most SMS_TIMEOUT.
# More than a worker's request threads, so that sends do not queue while Vonage is well.
SEND_THREADS = 16
LOG = logging.getLogger("idp")


def build(config):
    backend = config["SMS_BACKEND"]
    if backend == "vonage":
        return VonageSmsSender(config)
    if backend == "console":
        return ConsoleSmsSender()
    if backend == "file":
        return FileSmsSender(config["OUTBOX_DIR"])
    raise ConfigurationError(f"IDP_SMS_BACKEND must be vonage, console or file, not {backend!r}")


class VonageSmsSender:
    def __init__(self, config):
        # The SDK's SMS client alone: `vonage.Vonage` builds a client for each of its fifteen
        # APIs, and importing them all costs every worker about 10 MiB more.
        from vonage_http_client import Auth, HttpClient, HttpClientOptions
        from vonage_sms import Sms as SmsApi

        if not config["VONAGE_API_KEY"] or not config["VONAGE_API_SECRET"]:
            # Without credentials the app would start and then fail every PIN at send time.
            raise ConfigurationError(
                "IDP_SMS_BACKEND=vonage needs IDP_VONAGE_API_KEY and IDP_VONAGE_API_SECRET"
            )
        self.sender_id = config["VONAGE_SMS_FROM"]
        # The SDK's timeout bounds the connect and each read, not the whole answer: a provider
        # that trickles its answer would hold the request's thread as long as it liked. The
        # call runs in a thread of this pool instead, and the request waits SMS_TIMEOUT for it.
        self.timeout = config["SMS_TIMEOUT"]
        self.calls = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="vonage")
        self.sms = SmsApi(
            HttpClient(
                Auth(api_key=config["VONAGE_API_KEY"], api_secret=config["VONAGE_API_SECRET"]),
                HttpClientOptions(
                    rest_host=config["VONAGE_REST_HOST"],
                    timeout=config["SMS_TIMEOUT"],
                    # A retried POST could deliver a PIN twice and bill it twice.
                    max_retries=0,
                ),
                # The SDK's user agent names its release, as `vonage.Vonage` sends it.
                version("vonage"),
            )
        )

    def send(self, message: Sms) -> SmsReceipt:
        from vonage_sms import SmsMessage

        call = self.calls.submit(
            self.sms.send,
            SmsMessage(to=message.to.lstrip("+"), from_=self.sender_id, text=message.text),
        )
        try:
            response = call.result(timeout=self.timeout)
        except NoAnswerInTime:
            # Still queued behind calls that hang: then it is never posted, as the person reads.
            if call.cancel():
                raise SendError(f"Vonage SMS not sent: queued for {self.timeout} s") from None
            # Already posted: Vonage may still deliver it (and bill it).
            raise SendUnconfirmed(
                f"Vonage SMS unconfirmed: no answer in {self.timeout} s",
                lambda accepted: call.add_done_callback(lambda done: _late_answer(done, accepted)),
            ) from None
        except Exception as error:  # the SDK raises many types; all mean "not sent"
            raise SendError(f"Vonage SMS failed: {type(error).__name__}") from None
        return _receipt(response)


def _receipt(response) -> SmsReceipt:
    sent = response.messages[0] if response.messages else None
    if sent is None or sent.status != "0":
        raise SendError(f"Vonage SMS rejected with status {getattr(sent, 'status', None)!r}")
    return SmsReceipt(message_id=sent.message_id, price=sent.message_price)


def _late_answer(call, accepted) -> None:
    """Vonage's answer to a send that had timed out: `accepted` gets the receipt if it took
    the SMS (delivered and billed after all)."""
    try:
        receipt = _receipt(call.result())
    except Exception as error:  # the SDK's own, or SendError: not sent either way
        LOG.info("Vonage SMS unconfirmed, not accepted afterwards (%s)", type(error).__name__)
        return
    LOG.warning(
        "Vonage SMS accepted after the timeout (message %s, EUR %s)",
        receipt.message_id,
        receipt.price,
    )
    try:
        accepted(receipt)
    except Exception as error:  # in Vonage's thread: no request to answer, one line to log
        LOG.warning("Vonage SMS accepted after the timeout, not counted: %s", error)


class ConsoleSmsSender:
    def send(self, message: Sms) -> SmsReceipt:
        print_loudly("sms", [f"To: {message.to}", message.text])
        return SmsReceipt()


class FileSmsSender:
    def __init__(self, directory: str):
        self.outbox = FileOutbox(directory, "sms")

    def send(self, message: Sms) -> SmsReceipt:
        try:
            self.outbox.write(message)
        except OSError as error:
            raise SendError(f"could not write to the outbox: {error}") from None
        return SmsReceipt()
