"""The API's authentication endpoints: obtaining a token, and who the caller is."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import Membership, User
from portal.api import ScopedRateThrottle


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """Describes ``Authorization: Token <secret>`` in the OpenAPI schema."""

    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": 'The token from POST /api/v1/auth/token/, as "Token <token>".',
        }


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(
        max_length=4096, trim_whitespace=False, write_only=True, style={"input_type": "password"}
    )
    otp_token = serializers.CharField(
        max_length=16,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text=_("The current code of the account's authenticator app, if it has one."),
    )

    def validate_otp_token(self, value: str) -> str:
        return "".join(value.split())


class TokenResponseSerializer(serializers.Serializer):
    token = serializers.CharField(
        read_only=True,
        help_text=_("Shown this once: the portal keeps only a keyed digest of it."),
    )
    expires_at = serializers.DateTimeField(
        read_only=True,
        help_text=_(
            "When the token ends at the latest. It ends sooner after API_TOKEN_IDLE_DAYS "
            "without use, and when its user changes password or two-factor set-up."
        ),
    )


class AuthErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class MembershipSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="organization.id", read_only=True)
    name = serializers.CharField(source="organization.name", read_only=True)
    kind = serializers.CharField(source="organization.kind", read_only=True)
    role = serializers.CharField(source="role.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "name", "kind", "role"]


class MeSerializer(serializers.ModelSerializer):
    organizations = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "language", "organizations"]

    @extend_schema_field(MembershipSerializer(many=True))
    def get_organizations(self, user: User) -> list[dict]:
        memberships = (
            Membership.objects.filter(user=user, is_active=True)
            .select_related("organization", "role")
            .order_by("organization__name")
        )
        # A many=True serializer's data is a list (a ReturnList); djangorestframework-stubs
        # types it as the one object's ReturnDict.
        return MembershipSerializer(memberships, many=True).data  # type: ignore[return-value]


class ObtainTokenView(APIView):
    """Exchange a username, password and (for accounts with two-factor) a current code for an
    API token. Failures count against the same throttle as the login page. An account that must
    use two-factor authentication and has not set it up gets 403."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "token"

    @extend_schema(
        operation_id="auth_token_create",
        request=TokenRequestSerializer,
        responses={
            200: TokenResponseSerializer,
            # The body: field errors, or "detail" for wrong credentials (portal.api's shape).
            400: OpenApiResponse(description="Wrong credentials, or a missing or wrong code."),
            403: OpenApiResponse(
                AuthErrorSerializer,
                description="The account must use two-factor authentication and has none set up.",
            ),
            429: OpenApiResponse(AuthErrorSerializer, description="Too many failed attempts."),
        },
        auth=[],
    )
    def post(self, request):
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            token, secret = services.issue_api_token(
                request=request,
                username=data["username"],
                password=data["password"],
                otp_token=data.get("otp_token", ""),
            )
        except services.Throttled as exc:
            raise exceptions.Throttled(wait=exc.retry_after, detail=exc.message) from exc
        except (services.TwoFactorRequired, services.InvalidCode) as exc:
            return Response({"otp_token": [exc.message]}, status=status.HTTP_400_BAD_REQUEST)
        except services.TwoFactorSetupRequired as exc:
            return Response({"detail": exc.message}, status=status.HTTP_403_FORBIDDEN)
        except services.AuthenticationRefused as exc:
            return Response({"detail": exc.message}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            TokenResponseSerializer({"token": secret, "expires_at": token.expires_at}).data
        )


class MeView(APIView):
    """The caller's profile and the organizations they are an active member of."""

    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_me_retrieve", responses={200: MeSerializer})
    def get(self, request):
        return Response(MeSerializer(request.user).data)
